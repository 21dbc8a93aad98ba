"""Typed options of the Redis driver and the URL forms that set them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import SplitResult, unquote

from sessionstore import ConfigurationError, StoreOptions, redact_url

__all__ = ["RedisOptions", "options_from_url"]

_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9:._/-]{0,100}")
_SCHEME_MODES: Final = {
    "redis": "single",
    "rediss": "single",
    "unix": "single",
    "redis+sentinel": "sentinel",
    "redis+cluster": "cluster",
}


@dataclass(frozen=True)
class RedisOptions(StoreOptions):
    """Options of ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` and
    ``redis+cluster://`` (see ``docs/redis.md``). The URL sets the connection fields;
    every field can also be given as a query option or keyword argument."""

    mode: Literal["single", "sentinel", "cluster"] = "single"
    host: str = "127.0.0.1"
    port: int = 6379
    unix_socket_path: str | None = None
    #: ``host:port,host:port`` of the Sentinels (sentinel) or cluster seed nodes (cluster).
    nodes: str | None = None
    #: The Sentinel service (master) name.
    service_name: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    #: TLS (set by ``rediss://``; ``tls=true`` for Sentinel and Cluster URLs).
    tls: bool = False
    #: PEM file of the CA(s) that sign the server's certificate (default: the system's).
    ssl_ca_certs: str | None = None
    #: Client certificate (PEM; may hold the key too) for servers that require one
    #: (``tls-auth-clients yes``), and its key.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Verification of the server's certificate; ``none`` encrypts without checking who
    #: answers (tests only).
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    #: The server's certificate must name the host of the URL.
    ssl_check_hostname: bool = True
    client_name: str | None = None
    #: Prefix of every key; the namespace follows it.
    key_prefix: str = "sessionstore:"
    #: Seconds one command may take before it counts as failed.
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    #: Seconds an operation keeps retrying (with backoff) through outages and failovers.
    retry_deadline: float = 10.0
    #: Connections per server, per event loop that uses the store (see ``_loops.py``).
    max_connections: int = 64
    #: Seconds a call waits for a connection when all ``max_connections`` are busy
    #: (callers are served in order); then :class:`~sessionstore_redis.PoolTimeoutError`.
    pool_timeout: float = 10.0
    #: Seconds ``initialize()`` keeps retrying a server that refuses or does not answer
    #: (0: fail at the first attempt). ``retry_deadline`` is for an open store.
    connect_retry: float = 0.0
    #: The lean request path (``_lane.py``, redis-py internals for speed); ``false``:
    #: only redis-py's public API.
    lean: bool = True
    #: After every write, wait until this many replicas acknowledged it (Redis WAIT).
    wait_replicas: int = 0
    #: Seconds WAIT may block.
    wait_timeout: float = 1.0
    #: Native expiry (PEXPIREAT) is set at expires_at + this many seconds (a backstop).
    expiry_grace: float = 86_400.0
    #: Index shards; 0 = automatic (1 on a single server and Sentinel, 16 on Cluster).
    #: Fixed for the life of a namespace's data.
    index_shards: int = 0
    #: The key layout a namespace gets on Cluster when it has none yet: 4 (each session's
    #: keys in its index shard's slot) or 3 (the layout older versions read: for a fleet
    #: still running them). A namespace keeps the layout it was given (``docs/redis.md``).
    key_layout: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX_RE.fullmatch(self.key_prefix) is None:
            raise ConfigurationError(
                f"invalid key_prefix {self.key_prefix!r} (allowed: [A-Za-z0-9:._/-], "
                "at most 100 characters; no braces)"
            )
        positive = ("socket_timeout", "connect_timeout", "retry_deadline", "wait_timeout")
        for name in (*positive, "pool_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"option {name!r} must be positive")
        if not 0 <= self.connect_retry <= 3600:
            raise ConfigurationError("option 'connect_retry' must be in [0, 3600] seconds")
        if self.expiry_grace < 0:
            raise ConfigurationError("option 'expiry_grace' must not be negative")
        if self.max_connections < 1:
            raise ConfigurationError("option 'max_connections' must be at least 1")
        if not 0 <= self.wait_replicas <= 100:
            raise ConfigurationError("option 'wait_replicas' must be in [0, 100]")
        if not 0 <= self.index_shards <= 1024:
            raise ConfigurationError("option 'index_shards' must be in [0, 1024]")
        if self.key_layout not in (3, 4):
            raise ConfigurationError("option 'key_layout' must be 3 or 4")
        if not 0 <= self.db <= 1_000_000:
            raise ConfigurationError("option 'db' must be a non-negative database number")
        self._check_tls()
        if self.mode == "cluster":
            if self.db != 0:
                raise ConfigurationError(
                    f"Redis Cluster has only database 0, got db={self.db} "
                    "(use key_prefix or namespace to separate data)"
                )
            if not self.nodes:
                raise ConfigurationError("redis+cluster needs at least one node (host:port)")
        if self.mode == "sentinel" and (not self.nodes or not self.service_name):
            raise ConfigurationError(
                "redis+sentinel needs sentinel nodes and a service name: "
                "redis+sentinel://h1:26379,h2:26379/mymaster"
            )
        for host, port in self.node_list():
            if not host or not 0 < port < 65536:
                raise ConfigurationError(f"invalid node address {host}:{port}")

    def _check_tls(self) -> None:
        given = [
            name
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if self.ssl_cert_reqs != "required":
            given.append("ssl_cert_reqs")
        if not self.ssl_check_hostname:
            given.append("ssl_check_hostname")
        if given and not self.tls:
            raise ConfigurationError(
                f"option(s) {', '.join(given)} need TLS: use a rediss:// URL "
                "(or tls=true with redis+sentinel:// and redis+cluster://)"
            )
        if self.tls and self.unix_socket_path:
            raise ConfigurationError("TLS over a Unix socket is not supported (use rediss://)")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigurationError(
                "option 'ssl_keyfile' needs 'ssl_certfile' (the client certificate)"
            )

    def node_list(self) -> list[tuple[str, int]]:
        """``nodes`` parsed into ``(host, port)`` pairs."""
        if not self.nodes:
            return []
        default = 26379 if self.mode == "sentinel" else 6379
        return [_host_port(item, default) for item in self.nodes.split(",") if item.strip()]

    @property
    def shards(self) -> int:
        """The number of index shards in effect."""
        if self.index_shards:
            return self.index_shards
        return 16 if self.mode == "cluster" else 1

    @property
    def target(self) -> str:
        """Where the store connects (no credentials), for messages."""
        if self.mode == "single":
            if self.unix_socket_path:
                return f"unix://{self.unix_socket_path}"
            return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"
        return f"redis+{self.mode}://{self.nodes}" + (
            f"/{self.service_name}" if self.service_name else ""
        )


def _host_port(item: str, default: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = item.rpartition(":")
        if not sep:
            host, port_text = item, ""
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise ConfigurationError(f"invalid port in node address {item!r}") from None
    return host, port


def options_from_url(parts: SplitResult) -> dict[str, Any]:
    """The connection options a URL encodes outside its query string."""
    scheme = parts.scheme.lower()
    mode = _SCHEME_MODES.get(scheme)
    if mode is None:
        raise ConfigurationError(f"not a Redis URL: {redact_url(parts.geturl())!r}")
    out: dict[str, Any] = {"mode": mode}
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    if userinfo:
        user, sep, password = userinfo.partition(":")
        if user:
            out["username"] = unquote(user)
        if sep:
            out["password"] = unquote(password)
    path = parts.path
    if scheme == "unix":
        if not path or path == "/":
            raise ConfigurationError("unix:// URLs need a socket path: unix:///run/redis.sock")
        out["unix_socket_path"] = unquote(path)
        return out
    if scheme == "rediss":
        out["tls"] = True
    segments = [s for s in path.split("/") if s]
    if mode == "sentinel":
        out["nodes"] = hostinfo
        if segments:
            out["service_name"] = unquote(segments[0])
        if len(segments) > 1:
            out["db"] = _db(segments[1])
        if len(segments) > 2:
            raise ConfigurationError("redis+sentinel URL path is /<service>[/<db>]")
        return out
    if mode == "cluster":
        out["nodes"] = hostinfo
        if segments:
            db = _db(segments[0])
            if db != 0 or len(segments) > 1:
                raise ConfigurationError(
                    f"Redis Cluster has only database 0, got {path!r} in "
                    f"{redact_url(parts.geturl())!r}"
                )
        return out
    if hostinfo:
        host, port = _host_port(hostinfo, 6379)
        out["host"], out["port"] = host, port
    if segments:
        if len(segments) > 1:
            raise ConfigurationError("redis:// URL path is /<db>")
        out["db"] = _db(segments[0])
    return out


def _db(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"invalid database number {text!r}") from None
