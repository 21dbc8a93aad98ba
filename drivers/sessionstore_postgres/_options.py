"""Typed options of the PostgreSQL driver and the URL forms that set them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import SplitResult, unquote

from sessionstore import ConfigurationError, StoreOptions

__all__ = ["PostgresOptions", "options_from_url"]

_PREFIX_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,29}")
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True)
class PostgresOptions(StoreOptions):
    """Options of ``postgresql://`` and ``postgres://`` (see ``docs/postgres.md``).

    The URL's authority and path set ``user``, ``password``, ``host``, ``port`` and
    ``database``; every field can also be given as a query option or keyword argument.
    """

    host: str = "localhost"
    port: int = 5432
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    #: TLS as libpq's ``sslmode`` (``None``: asyncpg's default, ``prefer``).
    sslmode: SslMode | None = None
    application_name: str = "sessionstore"
    #: Prefix of the driver's tables and function (``[a-z_][a-z0-9_]*``, at most 30 chars).
    table_prefix: str = "sessionstore_"
    #: Connections kept open / at most open.
    min_size: int = 1
    max_size: int = 10
    #: Seconds one connection attempt may take.
    connect_timeout: float = 5.0
    #: Seconds one statement may run: the server's ``statement_timeout``; a connection
    #: with no reply for this plus a grace (1 s + 10 %) is terminated by the pool.
    command_timeout: float = 30.0
    #: Seconds an operation keeps retrying (with backoff) through an outage or a restart.
    retry_deadline: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if _PREFIX_RE.fullmatch(self.table_prefix) is None:
            raise ConfigurationError(
                f"invalid table_prefix {self.table_prefix!r} (allowed: [a-z_][a-z0-9_]*, "
                "at most 30 characters)"
            )
        for name in ("connect_timeout", "command_timeout", "retry_deadline"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"option {name!r} must be positive")
        if not 0 <= self.min_size <= 1000:
            raise ConfigurationError("option 'min_size' must be in [0, 1000]")
        if not 1 <= self.max_size <= 1000:
            raise ConfigurationError("option 'max_size' must be in [1, 1000]")
        if self.min_size > self.max_size:
            raise ConfigurationError("option 'min_size' must not exceed 'max_size'")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"invalid port {self.port}")
        if not self.host:
            raise ConfigurationError("option 'host' must not be empty")
        if len(self.application_name) > 63 or not self.application_name.isprintable():
            raise ConfigurationError("option 'application_name' must be printable, <= 63 chars")


def options_from_url(parts: SplitResult) -> dict[str, Any]:
    """``user``, ``password``, ``host``, ``port`` and ``database`` from the URL."""
    values: dict[str, Any] = {}
    if parts.username:
        values["user"] = unquote(parts.username)
    if parts.password is not None:
        values["password"] = unquote(parts.password)
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError("invalid port in the PostgreSQL URL") from None
    if parts.hostname:
        values["host"] = unquote(parts.hostname)
    if port is not None:
        values["port"] = port
    path = unquote(parts.path.lstrip("/"))
    if "/" in path:
        raise ConfigurationError("the URL path is the database name (one segment)")
    if path:
        values["database"] = path
    if parts.fragment:
        raise ConfigurationError("a PostgreSQL URL takes no #fragment")
    return values
